"""zerodown: deploy a new version of a web service without a single failed request."""

__version__ = "0.1.0"
