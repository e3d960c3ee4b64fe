"""The entry points: each module holds one area's HTTP routes and WebSocket commands,
which parse, call a service and map its errors (app.py registers them all)."""
