"""REST and the plain WebSockets, grouped by resource: orders, market data (trades and the
book), live feeds. The order mutations run below FastAPI (`orders.py` says why)."""
