"""End-to-end tests: the real `loyalty` executable, run as a separate process."""
