import { Link, useLocation } from "react-router";
import { PageHeader } from "../components/ui";

export function NotFoundPage() {
  const location = useLocation();
  return (
    <>
      <PageHeader title="There is no page here" />
      <p>
        Nothing in Slipway lives at <code>/app{location.pathname}</code>. Go to the <Link to="/models">models</Link>, or
        check the link you followed.
      </p>
    </>
  );
}
