"""ASGI apps that tests serve from a real uvicorn subprocess."""
