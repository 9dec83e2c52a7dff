"""Commands of the application layer: what needs neither one peer nor the other alone."""
