"""The Customer.io wire: the one client that talks to Customer.io's App and Track APIs, and its emulator."""
