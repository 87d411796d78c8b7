"""The bottom layer: params (reading, names, validation), durable writes, the one-message exit,
run records and fetching from the hub, ModelScope or a URL. Imports no other subpackage."""
