"""genie: a Genie-style generative interactive environment you can train, measure and play."""

__version__ = "0.1.0"
