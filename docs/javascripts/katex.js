// Render the maths that pymdownx.arithmatex (generic mode) leaves in <span|div class="arithmatex">.
// document$ is mkdocs-material's page-load observable, so instant navigation re-renders too.
document$.subscribe(() => {
  for (const element of document.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        {left: "\\(", right: "\\)", display: false},
        {left: "\\[", right: "\\]", display: true},
      ],
      throwOnError: false,
    });
  }
});
