"""The package version, in a leaf module so code inside anomed never imports the package root."""

__version__ = "0.1.0"
