"""The POS HTTP API: a FastAPI application over the services, served by uvicorn."""
