"""Drops: countdown flash sales and coupons on Redis Lua atomic stock, orders and payment deadlines."""
