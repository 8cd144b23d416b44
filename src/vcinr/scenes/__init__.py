"""Scene tools around the ``scene`` modality: a test-scene generator and a turntable renderer."""
