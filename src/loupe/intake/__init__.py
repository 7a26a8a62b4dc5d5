"""Images in: decoding, the embedding pipeline, URL fetches, thumbnails, video frames, inputs, folder import."""
