"""Domain types and pure logic. Imports nothing of FastAPI, Typer, boto3, httpx or SQLAlchemy."""
