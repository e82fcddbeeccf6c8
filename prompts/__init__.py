"""Versioned prompt templates (installed as ``openie4pp.prompts``)."""
