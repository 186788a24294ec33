"""The queue runner: claims due work, delivers it, settles outcomes, writes DSNs."""
