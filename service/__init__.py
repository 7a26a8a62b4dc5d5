"""HTTP service (Litestar): the Clarifai-v2-compatible API and the web page."""
