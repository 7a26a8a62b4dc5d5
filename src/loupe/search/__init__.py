"""Visual and filtered search over an app's inputs."""
