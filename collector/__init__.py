"""The edgemeter collector: ingests, stores and compares results."""
