"""Telemetry: the one boundary-span helper, the SDK pipeline, exporters, the export process."""
