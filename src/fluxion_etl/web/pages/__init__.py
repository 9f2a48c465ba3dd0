"""One module per section of the control centre, each with its ``router``."""
