"""The Sanic recommendation service: precomputed lookups from versioned SQLite files."""
