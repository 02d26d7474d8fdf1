"""The archiver: persists every engine event, each order's state and every trade."""
