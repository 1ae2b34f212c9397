"""Long-running listeners of provider event streams (Fortnox's topics WebSocket): each event is
stored in the inbox with its offset and queued for processing like a webhook."""
