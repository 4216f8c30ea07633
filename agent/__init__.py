"""TGFlow license agent: a Qt-free library (see ``agent.protocol`` for the wire contract)."""
