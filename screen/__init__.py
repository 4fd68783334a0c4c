"""The status screen: a separate process showing the sensor's state on a small OLED.

It subscribes to the sensor's retained state and status topics and to its
alert topic, renders pages with luma (a 128x64 SSD1306 or SH1106, or luma's
dummy device for tests and documentation), and drives a button and an LED
with gpiozero. Not the job of this package: detecting anything.
"""
