"""The project's own wire contract: commands, events, price/quantity parsing and config.

Every service imports these; nothing here does I/O, so the engine core can depend on it.
"""
