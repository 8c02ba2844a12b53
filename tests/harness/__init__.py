"""Test harness: real service processes on loopback, and audio analysis for assertions."""
