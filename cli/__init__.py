"""The imgclf command-line application (installed as the package `imgclf_cli`)."""
