"""Thin Qt views over desktop_ft.core: render state, forward intent, never block."""
