"""Generated code. Never edit; rebuilt by make proto."""
