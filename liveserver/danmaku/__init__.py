"""Danmaku: send, filter, rate limits, history and resume, moderation, coalesced fan-out, likes."""
