"""What people look at: the timeline, explanations, the HTML report, JUnit, the live view."""
