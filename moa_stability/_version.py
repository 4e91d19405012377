"""The toolkit version, in a module of its own so that every layer can read it (part of the
sweep cache key) without importing the package's public API."""

__version__ = "0.1.0"
