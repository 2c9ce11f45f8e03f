"""Root conftest: every test tier shares the fixtures in pdfchat_tools.testing."""

pytest_plugins = ["pdfchat_tools.testing"]
