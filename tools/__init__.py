"""Developer tooling run by the Makefile; not part of the services or the Docker image."""
