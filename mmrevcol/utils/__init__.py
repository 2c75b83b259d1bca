"""Small helpers for the tools (command line parsing)."""
