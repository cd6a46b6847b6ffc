"""cellbus message protocol: envelope, message types, codec, bus keys and the bus."""
