"""The call's audio path: G.711 μ-law, resampling, format conversion and voice activity detection."""
