"""Where data come from: the user data format and its dataset description, data verification,
the benchmark vocabularies, the built-in scenes dataset, and the NUS-WIDE / Open Images release
converters. Nothing here runs a network or reads stored features."""
