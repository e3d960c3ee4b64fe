"""Rooms: lifecycle, presence, products, bans."""
