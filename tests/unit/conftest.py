"""Unit tests: pure logic against in-memory fakes of our own interfaces. No sockets."""
