"""FedML Flower App (ServerApp + ClientApp). Must not import Django."""
