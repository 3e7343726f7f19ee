"""opml: operationalize an ML model end to end from one CLI, on an embedded workspace."""

__version__ = "0.1.0"
