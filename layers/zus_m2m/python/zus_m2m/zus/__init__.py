"""The Zus API: endpoints, models and the HTTP client (the only module here that imports requests)."""
