"""The version, in one place: the package, `bncli --version`, provenance and pyproject.toml all read it."""

__version__ = "0.1.0"
