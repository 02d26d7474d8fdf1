"""The API's edge: what a hostile or careless client meets before any route runs.

Body, header and WebSocket message sizes, header/body/idle timeouts and connection caps are
enforced in uvicorn's protocol layer (`server.py`, `http.py`, `websocket.py`), so a request
that breaks a limit costs a few microseconds and never reaches the application.
"""
