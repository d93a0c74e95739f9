"""Worker programs: reusable components and the stages of the bundled applications."""
