"""Tests of biometrics.top: model, reading, view."""
