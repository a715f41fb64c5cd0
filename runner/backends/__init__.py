"""Backends: the only code that talks to a container engine (today Docker). They know `ContainerSpec`."""
