"""RFT Workbench helper package: every piece of logic the notebooks call."""

__version__ = "0.1.0"
