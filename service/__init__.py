"""gatelog: the log backend of an LLM API gateway, on ClickHouse."""

__version__ = "0.1.0"
