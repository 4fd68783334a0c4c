"""The alert book: the durable store every published alert goes through first."""
