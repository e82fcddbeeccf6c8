"""The application layer: the command line and the quickstart, which may import every layer."""
